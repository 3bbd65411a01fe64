"""Later attacks and defenses on self-supervised encoders, after the ICML 2022 paper."""
