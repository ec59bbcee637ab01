"""Light code shared by every PrivaDx role: data, preprocessing, metrics, wire formats.

Nothing in this package imports TensorFlow or TensorFlow Federated, so the edge agent and
the diagnosis CLI can use all of it on a device that has neither installed.
"""
