"""A warm-up module for the ``IM_TASK_WARMUP_MODULE`` test: importing it is recorded."""

import flask_sink

flask_sink.record("warmed up")
