"""Core library of the study: registry, configs, data, training, evaluation, KFP components."""
