"""Plain ``nn.Module`` networks, one file per GAN family; no training logic lives here."""
