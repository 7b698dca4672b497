"""``im_task_sweep`` and ``im_task_worker``."""
