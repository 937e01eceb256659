"""The Streamlit pages: widgets wired to the services, nothing else."""
