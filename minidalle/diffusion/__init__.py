"""Lessons 03–04: diffusion. `gaussian` is the process itself (schedules, losses, DDPM and DDIM samplers,
guidance; Ho et al. 2020, Song et al. 2021, Ho & Salimans 2022); `ddpm` the unconditional model of lesson 03;
`glide` the text-conditional model of lesson 04 (Nichol et al. 2022)."""
