"""Building blocks shared by the model families (lessons 02–09): the U-Net (`unet`, Ho et al. 2020;
Dhariwal & Nichol 2021; Nichol et al. 2022) of DDPM, GLIDE and the unCLIP decoder and upsampler."""
