"""Lessons 08–09: DALL·E 1 (Ramesh et al. 2021, "Zero-Shot Text-to-Image Generation").

`dvae` (lesson 08, `notebooks/08_dvae.ipynb`, §2.1 and App. A) turns a picture into a grid of tokens and
back; `transformer` (lesson 09, `notebooks/09_dalle.ipynb`, §2.2, §2.6 and App. B) models captions and image
tokens as one sequence, samples it, re-ranks with CLIP and completes pictures. Their measurements are in
`minidalle.eval.dalle1`.
"""
