package tunnel

import "google.golang.org/protobuf/encoding/protowire"

// Remote configuration (protocol version 2).
//
// A connector that takes its ingress rules from the edge says so with the
// FeatureRemoteConfig feature in its RegisterRequest. The edge then sends it
// a ConfigUpdate on the control stream right after the RegisterResponse
// (when the tunnel has a configuration) and again whenever a new version is
// stored. The connector answers every ConfigUpdate with a ConfigResult on the
// same control stream: the version it runs and, if it could not apply the one
// it was sent, which and why. A connector started with a local config file
// announces the feature too, so that it learns the tunnel has a remote
// configuration; it ignores it and answers with Local set.

// FeatureRemoteConfig is the RegisterRequest feature of a connector that
// reads ConfigUpdate frames.
const FeatureRemoteConfig = "remote-config"

// MaxConfigDocument bounds ConfigUpdate.Document; the edge stores nothing
// larger.
const MaxConfigDocument = 256 << 10

// ConfigUpdate carries one version of the tunnel's configuration
// (FrameConfig, edge → connector).
type ConfigUpdate struct {
	Version  int64  // 1: the version, counting from 1 per tunnel
	Document []byte // 2: the configuration: config.yml's ingress and originRequest, as YAML
}

// ConfigResult says which configuration a connector runs (FrameConfigResult,
// connector → edge), in answer to a ConfigUpdate.
type ConfigResult struct {
	Version       int64  // 1: the version in effect; 0 if none yet
	FailedVersion int64  // 2: a newer version it could not apply; 0 if none
	Error         string // 3: why FailedVersion could not be applied
	Local         bool   // 4: the connector runs from a local config file and ignores the edge's
}

func (*ConfigUpdate) frameType() FrameType { return FrameConfig }
func (*ConfigResult) frameType() FrameType { return FrameConfigResult }

func (m *ConfigUpdate) appendTo(b []byte) []byte {
	b = appendSint(b, 1, m.Version)
	return appendBytes(b, 2, m.Document)
}

func (m *ConfigUpdate) decode(b []byte) error {
	*m = ConfigUpdate{}
	return decodeFields(b, func(num protowire.Number, v field) error {
		var err error
		switch num {
		case 1:
			m.Version, err = v.sint()
		case 2:
			m.Document, err = v.bytes()
			m.Document = append([]byte(nil), m.Document...)
		}
		return err
	})
}

func (m *ConfigResult) appendTo(b []byte) []byte {
	b = appendSint(b, 1, m.Version)
	b = appendSint(b, 2, m.FailedVersion)
	b = appendString(b, 3, m.Error)
	return appendBool(b, 4, m.Local)
}

func (m *ConfigResult) decode(b []byte) error {
	*m = ConfigResult{}
	return decodeFields(b, func(num protowire.Number, v field) error {
		var err error
		switch num {
		case 1:
			m.Version, err = v.sint()
		case 2:
			m.FailedVersion, err = v.sint()
		case 3:
			m.Error, err = v.str()
		case 4:
			m.Local, err = v.bool()
		}
		return err
	})
}
