"""RTL-level verification: the transaction-level shell of the kernel and its cocotb bench."""
