"""Keras architectures for medical images and the ONNX export of trained weights."""
