"""Motion: optical flow (TV-L1, DIS, Farneback), temporal gradients, and their storage (`rgbtad motion`)."""
