"""Video in and out: decoding (PyAV), H.264 writing, snippet sampling, snippet settings and the pixel normalisation of backbone inputs."""
