"""Lessons 05–07: DALL·E 2, the unCLIP cascade (Ramesh et al. 2022). `prior` (lesson 05, §2.2) turns a caption
into a CLIP image embedding, `decoder` (lesson 06, §2.1) draws a picture from one, `upsampler` (lesson 06) doubles
its resolution, and `unclip` (lessons 06–07, §3) runs the cascade and what it can do with embeddings: variations,
interpolations, text diffs, inpainting. Their measurements (`eval prior`, `eval unclip`) are in `eval.dalle2`."""
