"""TensorFlow Federated: the federated averaging computations and the simulation driver.

Three layers, as in TFF's ``simple_fedavg`` example: pure Keras/TF pieces
(:mod:`models.training`), the federated wiring (:mod:`tff_core.fedavg`), and a thin
driver (:mod:`tff_core.simulation`).
"""
