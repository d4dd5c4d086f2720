"""The bottom layer: errors, atomic files, durations, the model_dir lock,
replica helpers.

Every other package may import these; they import nothing else of bam_tf.
"""
