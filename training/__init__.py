"""M1 and M2: the transformer, its training and evaluation, and M1 as a coder model."""
