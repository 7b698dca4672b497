"""What the three demo apps share: the scenarios, the recorder of outcomes, and the runner.

Tasks are framework-neutral, so every framework's demo app shows the same
scenarios (:mod:`demo_kit.scenarios`); each app only adds the routes that
start them. :func:`demo_kit.runner.run` serves an app, starts every scenario
through its routes, waits for the tasks on the embedded local queue and
prints a summary; ``python examples/run_demo.py <framework>`` runs one.
"""
