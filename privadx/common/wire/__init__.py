"""What edge and gateway both speak: topics, the message envelope, tensors and chunks.

This is the only place that defines the wire format; it imports neither TensorFlow nor paho.
"""
