"""Datasets: MedMNIST files, a site's own images, and their partitioning across sites."""
