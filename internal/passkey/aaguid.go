package passkey

import "github.com/google/uuid"

// models names the authenticators people use most by their AAGUID (from
// the community list at github.com/passkeydeveloper/passkey-authenticator-aaguids),
// so a new passkey is called what the person will recognise. An unknown or
// zero AAGUID (many authenticators send zeros when no attestation is
// asked) leaves the name to the caller.
var models = map[uuid.UUID]string{
	uuid.MustParse("ea9b8d66-4d01-1d21-3ce4-b6b48cb575d4"): "Google Password Manager",
	uuid.MustParse("adce0002-35bc-c60a-648b-0b25f1f05503"): "Chrome on Mac",
	uuid.MustParse("fbfc3007-154e-4ecc-8c0b-6e020557d7bd"): "iCloud Keychain",
	uuid.MustParse("08987058-cadc-4b81-b6e1-30de50dcbe96"): "Windows Hello",
	uuid.MustParse("9ddd1817-af5a-4672-a2b9-3e3dd95000a9"): "Windows Hello",
	uuid.MustParse("6028b017-b1d4-4c02-b4b3-afcdafc96bb2"): "Windows Hello",
	uuid.MustParse("bada5566-a7aa-401f-bd96-45619a55120d"): "1Password",
	uuid.MustParse("d548826e-79b4-db40-a3d8-11116f7e8349"): "Bitwarden",
	uuid.MustParse("531126d6-e717-415c-9320-3d9aa6981239"): "Dashlane",
	uuid.MustParse("53414d53-554e-4700-0000-000000000000"): "Samsung Pass",
	uuid.MustParse("fdb141b2-5d84-443e-8a35-4698c205a502"): "KeePassXC",
	uuid.MustParse("50726f74-6f6e-5061-7373-50726f746f6e"): "Proton Pass",
	uuid.MustParse("cb69481e-8ff7-4039-93ec-0a2729a154a8"): "YubiKey 5",
	uuid.MustParse("ee882879-721c-4913-9775-3dfcce97072a"): "YubiKey 5",
	uuid.MustParse("fa2b99dc-9e39-4257-8f92-4a30d23c4118"): "YubiKey 5 NFC",
}

// modelName is the authenticator model's name, "" when unknown.
func modelName(aaguid uuid.UUID) string {
	return models[aaguid]
}
