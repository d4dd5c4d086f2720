"""The bottom layer: errors, atomic files, durations, replica helpers.

Every other package may import these; they import nothing else of bam_tf.
"""
