"""Drivers: commands that chain tasks, checkpoints and data (multistage transfer, strategy comparison,
compression, export, sharpness). Nothing below ``speechkit.drivers`` imports them."""
