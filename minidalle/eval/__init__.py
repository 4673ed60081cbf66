"""Measuring the models (lessons 02–11): `rates` (every rate with its bootstrap interval), `prompts` (the prompt
suites and the sampling loop), and each family's evaluation (`diffusion`, `dalle2`, `dalle1`)."""
