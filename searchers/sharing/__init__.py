"""Weight sharing: the one supernet trained along sampled subnets (elastic width and depth;
``python searchers/train_supernet.py``), and its loading for the trials' ``proxy.kind:
supernet``."""
