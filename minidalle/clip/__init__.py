"""Lesson 02: CLIP (Radford et al. 2021). `model` holds the two towers and the loss, `train` trains them on
the shapes world, `probes` measures zero-shot classification, retrieval and what CLIP does not encode."""
