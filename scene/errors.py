class StillMotionError(Exception):
    """A problem the artist can fix. The message is shown as-is in the UI, so it says what is
    wrong and what to do next ("Select the image plane first", not "obj is None")."""
