"""Snippet features: extraction (`rgbtad extract`, features.json), feature stores and paired teacher/student features."""
