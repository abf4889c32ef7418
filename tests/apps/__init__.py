"""Small applications the tests run in subprocesses (e.g. under gunicorn)."""
