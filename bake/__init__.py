"""Running a bake: the engine process, take folders, and the session that ties them together."""
