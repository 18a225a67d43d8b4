"""The profile command, ``python -m proxies.profile``: the NTIRE-style table of zoo
nets and genotype files on this device, and the comparison of two backends."""
