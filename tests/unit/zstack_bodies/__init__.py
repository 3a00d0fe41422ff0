"""ZStack command bodies as a real management node and ZStack's own agent tests build them (sources named)."""
