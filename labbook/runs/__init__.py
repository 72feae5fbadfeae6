"""Run folders: writer.py writes them (atomically, with a manifest), schema.py types every file
labbook reads back, and reader.py is the one gate every other stage reads a run through."""
