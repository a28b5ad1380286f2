"""Tickets that leave dpcluster: a level's mask, the weights it starts from and its trained network, written in
formats other tools read (``dpcluster export``)."""
