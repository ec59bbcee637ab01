"""PrivaDx's model, data split and local training as a Flower App (the peer comparison)."""
