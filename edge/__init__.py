"""The device side: local data, on-device training and on-device diagnosis.

Diagnosis (:mod:`edge.diagnose`) needs only numpy, Pillow, pydicom and ONNX Runtime; it never
imports TensorFlow.
"""
