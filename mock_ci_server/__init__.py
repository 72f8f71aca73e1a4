"""A local simulator of Groupon CommerceInterface (CI) and the GPN Transaction API."""
