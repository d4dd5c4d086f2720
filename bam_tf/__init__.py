"""bam_tf: BAM! Born-Again Multi-Task Networks in TensorFlow 2 / Keras.

Model Garden and TF-Hub's KerasLayer need Keras 2 (tf-keras); the switch must
be set before TensorFlow is first imported, so importing the package sets it.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
