"""Text into tokens (lessons 02, 04, 06, 09): CLIP's byte-pair encoding (`bpe`, Radford et al. 2021 §2.4)
and the word tokenizer of GLIDE, the unCLIP decoder and DALL·E 1 (`words`)."""
