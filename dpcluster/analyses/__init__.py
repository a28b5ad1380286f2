"""The papers' analyses of subnetworks, as library functions (pure where they can be): linear mode connectivity
(interpolation), the loss-landscape plane, Hessian sharpness, and the initial values each mask keeps. The sweep
runs each as a job kind per level (``dpcluster/sweeps/kinds/``)."""
