"""Management commands of im-task."""
