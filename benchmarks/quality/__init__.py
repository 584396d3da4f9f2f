"""Quality: honest topic and tone figures on gold, settings and rules compared side by side."""
