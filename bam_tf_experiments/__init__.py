"""Experiment bookkeeping on top of the bam_tf library.

The paper's tables from finished runs (report: Table 1 with significance
marks; paired_trials: two recipes trained on the same seeds, compared seed
by seed; statistics: paired bootstrap, Mann-Whitney, Holm-Bonferroni;
compute: what each method cost; plots: score distributions and training
curves) and the driver that trains a whole comparison trial by trial
(reproduce). These need scipy and matplotlib; training and serving do not.

This package imports bam_tf; bam_tf never imports it (tests/
test_experiments_package.py checks), so the library stays free of the
experiments' dependencies.
"""
