"""Pretraining (DINO, MAE): core + torch.distributed, no Qt."""
