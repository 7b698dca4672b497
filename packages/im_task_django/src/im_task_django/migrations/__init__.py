"""Migrations of the im_task_django app."""
