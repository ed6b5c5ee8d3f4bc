"""Dynamic-texture engine (two-stream synthesis): MSOE dynamics network in msoe.py."""
