"""The SIP edge (design §10): MESSAGEs from the PBX's phones become sends, like the API's."""
