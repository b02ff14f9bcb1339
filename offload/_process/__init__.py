"""ProcessPool's private machinery: the wire codec, the child's loop, and the
keeper thread that minds one child."""
