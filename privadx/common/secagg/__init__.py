"""Secure aggregation: the gateway learns the sum of the sites' updates and no single one.

Bonawitz et al., "Practical Secure Aggregation for Privacy-Preserving Machine Learning",
CCS 2017. Pure logic over the ``cryptography`` package's primitives; the MQTT
rounds that carry these messages are built on top.
"""
