"""Foundations every stage uses: errors, atomic writes, file readers, the device resolver, the precision decision and the time base."""
