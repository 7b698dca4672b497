"""A warm-up module for the ``IM_TASK_WARMUP_MODULE`` test: importing it is recorded."""

from im_task_testsupport import sink

sink.record("warmed up")
