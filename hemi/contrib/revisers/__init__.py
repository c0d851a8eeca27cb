"""Standard revisers: they change responses (and requests) of the rules that name them."""
