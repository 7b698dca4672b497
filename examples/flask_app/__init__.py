"""The demo's Flask app; ``python examples/run_demo.py flask`` runs the shared scenarios against it."""
