"""Streamlit-side helpers of the app: background jobs, session state, figures. Nothing here trains."""
