"""The aggregator service: runs federated rounds over MQTT and publishes the global model."""
