"""People in the data: takedown requests (faces and consent are to come)."""
