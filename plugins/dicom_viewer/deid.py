"""De-identification per DICOM PS3.15 Annex E, the burned-in annotation gate and pixel masking.

The attribute table is the Basic Application Level Confidentiality Profile's (PS3.15 Table E.1-1),
as published in DICOM PS3.15 2024b (dicom.nema.org/medical/dicom/2024b/output/chtml/part15/
chapter_E.html#table_E.1-1; checked against two independent machine-readable transcriptions of that
edition, innolitics/dicom-standard's confidentiality_profile_attributes.json and
KitwareMedical/dicom-anonymizer's dicomfields_2024b.py): each attribute keyword with its Basic
Profile action, combinations included; the table's group-repeating and private rows (curve data,
overlay data and comments, private attributes) are applied in code. A few attributes the table does
not list are treated as well (:data:`_BEYOND_TABLE_TEXT`).

Actions (PS3.15 E.3.1): ``D`` replace with a dummy value, ``Z`` replace with an empty (or dummy)
value, ``X`` remove, ``K`` keep, ``C`` clean, ``U`` replace the UID with a consistent non-zero one;
``X/Z``, ``X/D``, ``Z/D``, ``X/Z/D`` and ``X/Z/U*`` are choices the implementer makes per IOD.
Here a choice that may remove (``X``) removes, except the ``U*`` sequences (Referenced Image
Sequence, Source Image Sequence), which are kept with their UIDs remapped so that references
between the de-identified instances keep working; a choice between ``Z`` and ``D`` blanks.
``D`` on a sequence keeps the sequence and cleans its items with the same rules.

Beyond the table: private attributes, curve data (50xx,xxxx) and overlay data and comments
(60xx,3000 / 60xx,4000) are removed; every rule is applied recursively inside sequences; patient
name and ID become the CPMS pseudonym; UIDs are remapped with a keyed HMAC so two uploads of one
study at one site map identically, and other sites (keys) differently.

Dates follow the *Retain Longitudinal Temporal Information with Modified Dates* option by default,
narrowly: only the dates and times that place the images in time (:data:`LONGITUDINAL`: the
study's, series', acquisition's and content's) keep a value; their dates and date-times are shifted
by a per-patient number of days and their times of day are kept. Every other date, time or
date-time the table lists keeps its Basic Profile action under the option too: the patient's birth
date is emptied (Z), the birth time, instance creation, admission, calibration, menstrual ... dates
and times are removed (X), dummies stay dummies (D). Dates the table does not list are shifted
(times of day it does not list are kept). ``dates="remove"`` applies the Basic Profile's own date
actions to the longitudinal ones as well and removes every unlisted date.

``deidentify`` changes the dataset in place and returns an :class:`InstanceReport` of what it did;
:class:`StudyReport` aggregates the instances of a study.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Literal, Sequence

from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import BaseTag, Tag

# --- PS3.15 Table E.1-1, Basic Profile column -------------------------------------------------
# keyword action  (one per line; the tag comes from pydicom's data dictionary)
_BASIC_PROFILE_TEXT = """
AccessionNumber Z
AcquisitionComments X
AcquisitionContextSequence X/Z
AcquisitionDate X/Z
AcquisitionDateTime X/Z/D
AcquisitionDeviceProcessingDescription X/D
AcquisitionFieldOfViewLabel D
AcquisitionProtocolDescription X
AcquisitionTime X/Z
AcquisitionUID U
ActualHumanPerformersSequence X
AdditionalPatientHistory X
AddressTrial X
AdmissionID X
AdmittingDate X
AdmittingDiagnosesCodeSequence X
AdmittingDiagnosesDescription X
AdmittingTime X
AffectedSOPInstanceUID X
Allergies X
AnnotationGroupDescription X
AnnotationGroupLabel D
AnnotationGroupUID D
ApprovalStatusDateTime X
Arbitrary X
AssertionDateTime D
AssertionExpirationDateTime X
AttributeModificationDateTime D
AuthorObserverSequence X
BarcodeValue X/Z
BeamDescription X
BeamHoldTransitionDateTime D
BolusDescription X
BranchOfService X
CalibrationDate X
CalibrationDateTime Z
CalibrationTime X
CameraOwnerName X
CassetteID X
CertificateOfSigner D
CertifiedTimestamp X
ClinicalTrialCoordinatingCenterName Z
ClinicalTrialProtocolEthicsCommitteeApprovalNumber X
ClinicalTrialProtocolEthicsCommitteeName D
ClinicalTrialProtocolID D
ClinicalTrialProtocolName Z
ClinicalTrialSeriesDescription X
ClinicalTrialSeriesID X
ClinicalTrialSiteID Z
ClinicalTrialSiteName Z
ClinicalTrialSponsorName D
ClinicalTrialSubjectID D
ClinicalTrialSubjectReadingID D
ClinicalTrialTimePointDescription X
ClinicalTrialTimePointID Z
CommentsOnRadiationDose X
CommentsOnThePerformedProcedureStep X
CompensatorDescription X
ConcatenationUID U
ConceptualVolumeCombinationDescription Z
ConceptualVolumeDescription Z
ConceptualVolumeUID U
ConfidentialityConstraintOnPatientDataDescription X
ConstituentConceptualVolumeUID U
ConsultingPhysicianIdentificationSequence X
ConsultingPhysicianName Z
ContainerComponentID X
ContainerDescription X
ContainerIdentifier D
ContentCreatorIdentificationCodeSequence X
ContentCreatorName Z/D
ContentDate Z/D
ContentSequence D
ContentTime Z/D
ContextGroupLocalVersion D
ContextGroupVersion D
ContrastBolusAgent Z/D
ContrastBolusStartTime X
ContrastBolusStopTime X
ContributionDateTime X
ContributionDescription X
CountryOfResidence X
CreationDate X
CreationTime X
CurrentObserverTrial X
CurrentPatientLocation X
CurveDate X
CurveTime X
CustodialOrganizationSequence X
DataSetTrailingPadding X
Date D
DateOfDocumentOrVerbalTransactionTrial X
DateOfInstallation X
DateOfLastCalibration X
DateOfLastDetectorCalibration X/D
DateOfManufacture X
DateOfSecondaryCapture X
DateTime D
DateTimeOfLastCalibration X
DecayCorrectionDateTime D
DecompositionDescription X
DerivationDescription X
DestinationAE D
DetectorID X/D
DeviceAlternateIdentifier Z
DeviceDescription X
DeviceLabel D
DeviceSerialNumber X/Z/D
DeviceSettingDescription X
DeviceUID U
DigitalSignatureDateTime D
DigitalSignaturesSequence X
DigitalSignatureUID U
DimensionOrganizationUID U
DischargeDate X
DischargeDiagnosisDescription X
DischargeTime X
DisplacementReferenceLabel X
DistributionAddress X
DistributionName X
DoseReferenceDescription X
DoseReferenceUID U
DosimetricObjectiveUID U
EffectiveDateTime D
EncapsulatedDocument D
EndAcquisitionDateTime X/D
EntityDescription X
EntityLabel D
EntityLongLabel D
EntityName X
EquipmentFrameOfReferenceDescription X
EthicsCommitteeApprovalEffectivenessEndDate X
EthicsCommitteeApprovalEffectivenessStartDate X
EthnicGroup X
ExclusionStartDateTime D
ExpectedCompletionDateTime X
FailedSOPInstanceUIDList U
FiducialUID U
FillerOrderNumberImagingServiceRequest Z
FilterLookupTableDescription X
FindingsGroupRecordingDateTrial X
FindingsGroupRecordingTimeTrial X
FirstTreatmentDate X/D
FixationDeviceDescription X
FlowIdentifier D
FlowIdentifierSequence D
FractionationNotes Z
FractionGroupDescription X
FrameAcquisitionDateTime D
FrameComments X
FrameOfReferenceUID U
FrameOriginTimestamp D
FrameReferenceDateTime D
FunctionalSyncPulse D
GantryID X
GeneratorID X
GPSAltitude X
GPSAltitudeRef X
GPSAreaInformation X
GPSDateStamp X
GPSDestBearing X
GPSDestBearingRef X
GPSDestDistance X
GPSDestDistanceRef X
GPSDestLatitude X
GPSDestLatitudeRef X
GPSDestLongitude X
GPSDestLongitudeRef X
GPSDifferential X
GPSDOP X
GPSImgDirection X
GPSImgDirectionRef X
GPSLatitude X
GPSLatitudeRef X
GPSLongitude X
GPSLongitudeRef X
GPSMapDatum X
GPSMeasureMode X
GPSProcessingMethod X
GPSSatellites X
GPSSpeed X
GPSSpeedRef X
GPSStatus X
GPSTimeStamp X
GPSTrack X
GPSTrackRef X
GPSVersionID X
GraphicAnnotationSequence D
HangingProtocolCreationDateTime D
HL7DocumentEffectiveTime X
HumanPerformerName X
HumanPerformerOrganization X
IconImageSequence X
IdentifyingComments X
ImageComments X
ImagePresentationComments X
ImagingServiceRequestComments X
ImpedanceMeasurementDateTime D
Impressions X
InformationIssueDateTime D
InstanceCoercionDateTime X
InstanceCreationDate X/D
InstanceCreationTime X/Z/D
InstanceCreatorUID U
InstanceOriginStatus X
InstitutionAddress X
InstitutionalDepartmentName X
InstitutionalDepartmentTypeCodeSequence X
InstitutionCodeSequence X/Z/D
InstitutionName X/Z/D
InstructionPerformedDateTime Z/D
InsurancePlanIdentification X
IntendedFractionStartTime X
IntendedPhaseEndDate X/D
IntendedPhaseStartDate X/D
IntendedRecipientsOfResultsIdentificationSequence X
InterlockDateTime D
InterlockDescription D
InterlockOriginDescription D
InterpretationApprovalDate X
InterpretationApprovalTime X
InterpretationApproverSequence X
InterpretationAuthor X
InterpretationDiagnosisDescription X
InterpretationID X
InterpretationIDIssuer X
InterpretationRecordedDate X
InterpretationRecordedTime X
InterpretationRecorder X
InterpretationText X
InterpretationTranscriber X
InterpretationTranscriptionDate X
InterpretationTranscriptionTime X
InterventionDrugStartTime X
InterventionDrugStopTime X
IrradiationEventUID U
IssueDateOfImagingServiceRequest X
IssuerOfAdmissionID X
IssuerOfAdmissionIDSequence X
IssuerOfClinicalTrialProtocolID X
IssuerOfClinicalTrialSeriesID X
IssuerOfClinicalTrialSiteID X
IssuerOfClinicalTrialSubjectID X
IssuerOfClinicalTrialSubjectReadingID X
IssuerOfClinicalTrialTimePointID X
IssuerOfPatientID X
IssuerOfServiceEpisodeID X
IssuerOfServiceEpisodeIDSequence X
IssuerOfTheContainerIdentifierSequence Z
IssuerOfTheSpecimenIdentifierSequence Z
IssueTimeOfImagingServiceRequest X
LabelText X/Z
LargePaletteColorLookupTableUID U
LastMenstrualDate X
LensMake X
LensModel X
LensSerialNumber X
LensSpecification X
LongDeviceDescription X
MAC X
MakerNote X
ManufacturerDeviceClassUID U
ManufacturerDeviceIdentifier Z
MediaStorageSOPInstanceUID U
MedicalAlerts X
MedicalRecordLocator X
MilitaryRank X
ModifiedAttributesSequence X
ModifiedImageDate X
ModifiedImageDescription X
ModifiedImageTime X
ModifyingDeviceID X
ModifyingSystem D
MostRecentTreatmentDate X/D
MultienergyAcquisitionDescription X
MultiplexGroupUID U
NameOfPhysiciansReadingStudy X
NamesOfIntendedRecipientsOfResults X
NetworkID X
NonconformingDataElementValue X
NonconformingModifiedAttributesSequence X
ObservationDateTime X/D
ObservationDateTrial X
ObservationStartDateTime X
ObservationSubjectUIDTrial U
ObservationTimeTrial X
ObservationUID U
Occupation X
OperatorIdentificationSequence X/D
OperatorsName X/Z/D
OrderCallbackPhoneNumber X
OrderCallbackTelecomInformation X
OrderEnteredBy X
OrderEntererLocation X
OriginalAttributesSequence X
Originator X
OtherClinicalTrialProtocolIDsSequence X
OtherPatientIDs X
OtherPatientIDsSequence X
OtherPatientNames X
OverlayDate X
OverlayTime X
OverrideDateTime D
PaletteColorLookupTableUID U
ParticipantSequence X
ParticipationDateTime Z
PatientAddress X
PatientAge X
PatientBirthDate Z
PatientBirthName X
PatientBirthTime X
PatientComments X
PatientID Z/D
PatientInstitutionResidence X
PatientInsurancePlanCodeSequence X
PatientMotherBirthName X
PatientName Z
PatientPrimaryLanguageCodeSequence X
PatientPrimaryLanguageModifierCodeSequence X
PatientReligiousPreference X
PatientSetupPhotoDescription X
PatientSetupUID U
PatientSex Z
PatientSexNeutered X/Z
PatientSize X
PatientState X
PatientTelecomInformation X
PatientTelephoneNumbers X
PatientTransportArrangements X
PatientTreatmentPreparationMethodDescription X
PatientTreatmentPreparationProcedureParameterDescription X
PatientWeight X
PerformedLocation X
PerformedProcedureStepDescription X
PerformedProcedureStepEndDate X
PerformedProcedureStepEndDateTime X
PerformedProcedureStepEndTime X
PerformedProcedureStepID X
PerformedProcedureStepStartDate X
PerformedProcedureStepStartDateTime X
PerformedProcedureStepStartTime X
PerformedStationAETitle X
PerformedStationGeographicLocationCodeSequence X
PerformedStationName X
PerformedStationNameCodeSequence X
PerformingPhysicianIdentificationSequence X
PerformingPhysicianName X
PersonAddress X
PersonIdentificationCodeSequence D
PersonName D
PersonTelecomInformation X
PersonTelephoneNumbers X
PhysicianApprovingInterpretation X
PhysiciansOfRecord X
PhysiciansOfRecordIdentificationSequence X
PhysiciansReadingStudyIdentificationSequence X
PlacerOrderNumberImagingServiceRequest Z
PlateID X
PositionAcquisitionTemplateDescription X
PositionAcquisitionTemplateName X
PregnancyStatus X
PreMedication X
PrescriptionDescription X
PrescriptionNotes Z
PrescriptionNotesSequence Z
PresentationCreationDate X
PresentationCreationTime X
PresentationDisplayCollectionUID U
PresentationSequenceCollectionUID U
PriorTreatmentDoseDescription X
ProcedureStepCancellationDateTime X
ProductExpirationDateTime X
ProtocolName X/D
PyramidDescription X
PyramidLabel X
PyramidUID U
RadiationDoseIdentificationLabel D
RadiationDoseInVivoMeasurementLabel D
RadiationGenerationModeDescription Z
RadiationGenerationModeLabel D
RadiopharmaceuticalStartDateTime X
RadiopharmaceuticalStartTime X
RadiopharmaceuticalStopDateTime X
RadiopharmaceuticalStopTime X
ReasonForOmissionDescription X
ReasonForRequestedProcedureCodeSequence X
ReasonForStudy X
ReasonForSuperseding Z
ReasonForTheAttributeModification D
ReasonForTheImagingServiceRequest X
ReasonForTheRequestedProcedure X
ReasonForVisit X
ReasonForVisitCodeSequence X
ReceivingAE X
RecordedRTControlPointDateTime D
ReferencedConceptualVolumeUID U
ReferencedDateTime D
ReferencedDigitalSignatureSequence X
ReferencedDoseReferenceUID U
ReferencedDosimetricObjectiveUID U
ReferencedFiducialsUID U
ReferencedFrameOfReferenceUID U
ReferencedGeneralPurposeScheduledProcedureStepTransactionUID U
ReferencedImageSequence X/Z/U*
ReferencedObservationUIDTrial U
ReferencedPatientAliasSequence X
ReferencedPatientPhotoSequence X
ReferencedPatientSequence X
ReferencedPerformedProcedureStepSequence X/Z/D
ReferencedSOPInstanceMACSequence X
ReferencedSOPInstanceUID U
ReferencedSOPInstanceUIDInFile U
ReferencedStudySequence X/Z
ReferencedTreatmentPositionGroupUID U
ReferringPhysicianAddress X
ReferringPhysicianIdentificationSequence X
ReferringPhysicianName Z
ReferringPhysicianTelephoneNumbers X
RegionOfResidence X
RelatedFrameOfReferenceUID U
RequestAttributesSequence X
RequestedContrastAgent X
RequestedProcedureComments X
RequestedProcedureDescription X/Z
RequestedProcedureID X
RequestedProcedureLocation X
RequestedSeriesDescription X
RequestedSOPInstanceUID U
RequestingAE X
RequestingPhysician X
RequestingService X
RespiratoryMotionCompensationTechniqueDescription X
ResponsibleOrganization X
ResponsiblePerson X
ResultsComments X
ResultsDistributionListSequence X
ResultsID X
ResultsIDIssuer X
RetrieveAETitle X
ReviewDate Z
ReviewerName X/Z
ReviewTime Z
ROICreatorSequence X
ROIDateTime X
ROIDescription X
ROIGenerationDescription X
ROIInterpreter Z
ROIInterpreterSequence X
ROIName Z
ROIObservationDateTime X
ROIObservationDescription X
ROIObservationLabel X
RTAccessoryDeviceSlotID Z
RTAccessoryHolderSlotID Z
RTPhysicianIntentNarrative Z
RTPlanDate X/D
RTPlanDescription X
RTPlanLabel D
RTPlanName X
RTPlanTime X/D
RTPrescriptionLabel D
RTToleranceSetLabel D
RTTreatmentApproachLabel X/D
RTTreatmentPhaseUID U
SafePositionExitDate D
SafePositionExitTime D
SafePositionReturnDate D
SafePositionReturnTime D
ScheduledAdmissionDate X
ScheduledAdmissionTime X
ScheduledDischargeDate X
ScheduledDischargeTime X
ScheduledHumanPerformersSequence X
ScheduledPatientInstitutionResidence X
ScheduledPerformingPhysicianIdentificationSequence X
ScheduledPerformingPhysicianName X
ScheduledProcedureStepDescription X
ScheduledProcedureStepEndDate X
ScheduledProcedureStepEndTime X
ScheduledProcedureStepExpirationDateTime X
ScheduledProcedureStepID X
ScheduledProcedureStepLocation X
ScheduledProcedureStepModificationDateTime X
ScheduledProcedureStepStartDate X
ScheduledProcedureStepStartDateTime X
ScheduledProcedureStepStartTime X
ScheduledStationAETitle X
ScheduledStationGeographicLocationCodeSequence X
ScheduledStationName X
ScheduledStationNameCodeSequence X
ScheduledStudyLocation X
ScheduledStudyLocationAETitle X
ScheduledStudyStartDate X
ScheduledStudyStartTime X
ScheduledStudyStopDate X
ScheduledStudyStopTime X
SelectorAEValue D
SelectorASValue D
SelectorDAValue D
SelectorDTValue D
SelectorLOValue D
SelectorLTValue D
SelectorOBValue D
SelectorPNValue D
SelectorSHValue D
SelectorSTValue D
SelectorTMValue D
SelectorUNValue D
SelectorURValue D
SelectorUTValue D
SeriesDate X/D
SeriesDescription X
SeriesInstanceUID U
SeriesTime X/D
ServiceEpisodeDescription X
ServiceEpisodeID X
SetupTechniqueDescription X
ShieldingDeviceDescription X
SlideIdentifier X
SmokingStatus X
SOPAuthorizationDateTime X
SOPInstanceUID U
SourceConceptualVolumeUID U
SourceEndDateTime D
SourceFrameOfReferenceUID U
SourceIdentifier D
SourceImageSequence X/Z/U*
SourceManufacturer X
SourceOfPreviousValues Z
SourceSerialNumber X/Z
SourceStartDateTime D
SourceStrengthReferenceDate D
SourceStrengthReferenceTime D
SpecialNeeds X
SpecimenAccessionNumber X
SpecimenDetailedDescription X
SpecimenIdentifier D
SpecimenPreparationSequence Z
SpecimenShortDescription X
SpecimenUID U
StartAcquisitionDateTime X/D
StationAETitle X
StationName X/Z/D
StorageMediaFileSetUID U
StructureSetDate Z
StructureSetDescription X
StructureSetLabel D
StructureSetName X
StructureSetTime Z
StudyArrivalDate X
StudyArrivalTime X
StudyComments X
StudyCompletionDate X
StudyCompletionTime X
StudyDate Z
StudyDescription X
StudyID Z
StudyIDIssuer X
StudyInstanceUID U
StudyReadDate X
StudyReadTime X
StudyTime Z
StudyVerifiedDate X
StudyVerifiedTime X
SubstanceAdministrationDateTime X
SynchronizationFrameOfReferenceUID U
TargetUID U
TelephoneNumberTrial X
TemplateExtensionCreatorUID U
TemplateExtensionOrganizationUID U
TemplateLocalVersion X
TemplateVersion X
TextComments X
TextString X
Time D
TimeOfDocumentCreationOrVerbalTransactionTrial X
TimeOfLastCalibration X
TimeOfLastDetectorCalibration X/D
TimeOfSecondaryCapture X
TimezoneOffsetFromUTC X
TopicAuthor X
TopicKeywords X
TopicSubject X
TopicTitle X
TrackingUID U
TransactionUID U
TransducerIdentificationSequence X
TreatmentControlPointDate D
TreatmentControlPointTime D
TreatmentDate X/D
TreatmentMachineName X/Z
TreatmentPositionGroupLabel D
TreatmentPositionGroupUID U
TreatmentSessionUID U
TreatmentSite X/D
TreatmentSites X
TreatmentTechniqueNotes Z
TreatmentTime X/D
TreatmentToleranceViolationDateTime D
TreatmentToleranceViolationDescription D
UDISequence X
UID U
UniqueDeviceIdentifier X
UserContentLabel D
UserContentLongLabel D
VerbalSourceIdentifierCodeSequenceTrial X
VerbalSourceTrial X
VerificationDateTime D
VerifyingObserverIdentificationCodeSequence Z
VerifyingObserverName D
VerifyingObserverSequence D
VerifyingOrganization D
VisitComments X
WaveformFilterDescription X
XRayDetectorID D
XRayDetectorLabel X
XRaySourceID D
"""


@dataclass(frozen=True)
class Rule:
    keyword: str
    action: str  # as in the standard: "X", "Z", "D", "U", "X/Z", "X/Z/U*" ...

    @property
    def effective(self) -> str:
        """The single action this implementation takes (before the date option)."""
        choices = self.action.split("/")
        if "U*" in choices:
            return "U*"
        for preferred in ("X", "Z", "U", "D", "K", "C"):
            if preferred in choices:
                return preferred
        raise ValueError(self.action)


def _parse_profile(text: str) -> dict[int, Rule]:
    table: dict[int, Rule] = {}
    for line in text.strip().splitlines():
        keyword, action = line.split()
        tag = tag_for_keyword(keyword)
        if tag is None:  # pragma: no cover - guarded by a test
            raise KeyError(f"unknown DICOM keyword in the profile table: {keyword}")
        table[int(tag)] = Rule(keyword, action)
    return table


# Not in Table E.1-1 (checked against PS3.15 2024b), removed or remapped here all the same: they name
# or date the patient, the patient's issuers or admission, or the creating device and version.
_BEYOND_TABLE_TEXT = """
AcquisitionProtocolName X/D
AssigningAgencyOrDepartmentCodeSequence X
AssigningFacilitySequence X
AssigningJurisdictionCodeSequence X
ContextGroupExtensionCreatorUID U
CreatorVersionUID U
IssuerOfAccessionNumberSequence X
IssuerOfPatientIDQualifiersSequence X
ModifyingDeviceManufacturer X
PatientAlternativeCalendar X
PatientBirthDateInAlternativeCalendar X
PatientDeathDateInAlternativeCalendar X
RouteOfAdmissions X
"""

# Stricter than the table: free text. The table dummies Content Sequence (D: its items are cleaned
# with the same rules) but lists no rule for an SR item's text or a graphic annotation's text, which
# a clinician may have typed a name into. CPMS removes that text (the structure and codes stay); the
# Clean Structured Content and Clean Graphics options would be the standard's way to keep it.
_STRICTER_TEXT = """
TextValue X
UnformattedTextValue X
"""

BASIC_PROFILE: dict[int, Rule] = (_parse_profile(_BASIC_PROFILE_TEXT) | _parse_profile(_BEYOND_TABLE_TEXT)
                                  | _parse_profile(_STRICTER_TEXT))
"""Tag -> rule of PS3.15 Table E.1-1 (Basic Profile column), plus :data:`_BEYOND_TABLE_TEXT` and the
free-text removals of :data:`_STRICTER_TEXT`."""

# CID 7050 De-identification Method (scheme DCM)
DEID_CODES = {
    "113100": "Basic Application Confidentiality Profile",
    "113101": "Clean Pixel Data Option",
    "113102": "Clean Recognizable Visual Features Option",
    "113103": "Clean Graphics Option",
    "113104": "Clean Structured Content Option",
    "113105": "Clean Descriptors Option",
    "113106": "Retain Longitudinal Temporal Information Full Dates Option",
    "113107": "Retain Longitudinal Temporal Information Modified Dates Option",
    "113108": "Retain Patient Characteristics Option",
    "113109": "Retain Device Identity Option",
    "113110": "Retain UIDs Option",
    "113111": "Retain Safe Private Option",
}

_SHORT = {"113100": "Basic", "113101": "Clean Pixel Data", "113107": "Modified Dates"}
_PATIENT_NAME = 0x00100010
_PATIENT_ID = 0x00100020

#: The dates, date-times and times kept under the Modified Dates option (dates shifted, times of day
#: kept): those of the study, series, acquisition (with the per-frame acquisition date-times of
#: enhanced multi-frame images) and content, which order a patient's images in time. Every other
#: date or time of the table is treated by its Basic Profile action whatever the option.
LONGITUDINAL = frozenset({
    "StudyDate", "StudyTime", "SeriesDate", "SeriesTime", "AcquisitionDate", "AcquisitionTime",
    "AcquisitionDateTime", "ContentDate", "ContentTime", "FrameAcquisitionDateTime", "FrameReferenceDateTime",
    "StartAcquisitionDateTime", "EndAcquisitionDateTime",
})
_DUMMY_TEXT = "ANONYMIZED"
_DUMMY_DATE = "19000101"
_DUMMY_TIME = "000000"

DateMode = Literal["shift", "remove"]


# --- UIDs -------------------------------------------------------------------------------------

def remap_uid(uid: str, site_key: bytes) -> str:
    """A '2.25.<int>' UID derived from ``uid`` with HMAC-SHA256 under ``site_key`` (128 bits).

    Deterministic: the same UID and key always give the same result, so two uploads of one study
    stay one study; another key gives unrelated UIDs. At most 44 characters.
    """
    digest = hmac.new(site_key, uid.strip().strip("\0").encode("ascii", "replace"), hashlib.sha256).digest()
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


# --- dates ------------------------------------------------------------------------------------

def shift_date(value: str, days: int) -> str | None:
    """Shift a DA value (YYYYMMDD) by ``days``; None when it is not a full date."""
    value = value.strip()
    if len(value) != 8 or not value.isdecimal():
        return None
    try:
        d = _dt.date(int(value[:4]), int(value[4:6]), int(value[6:8]))
    except ValueError:
        return None
    try:
        return (d + _dt.timedelta(days=days)).strftime("%Y%m%d")
    except OverflowError:
        return None


def shift_datetime(value: str, days: int) -> str | None:
    """Shift the date part of a DT value (YYYYMMDD[HHMMSS.FFFFFF][&ZZXX]); None if it has no full date."""
    value = value.strip()
    date = shift_date(value[:8], days) if len(value) >= 8 else None
    return None if date is None else date + value[8:]


# --- reports ----------------------------------------------------------------------------------

@dataclass
class InstanceReport:
    """What happened to one instance: (attribute path, action) pairs in dataset order.

    Actions: ``removed``, ``emptied``, ``dummy``, ``replaced`` (pseudonym), ``remapped`` (UIDs),
    ``shifted`` (dates), ``cleaned`` (a kept sequence whose items were cleaned), ``private removed``,
    ``added``.
    """
    sop_instance_uid: str = ""
    study_instance_uid: str = ""
    entries: list[tuple[str, str]] = field(default_factory=list)

    def add(self, path: str, action: str) -> None:
        self.entries.append((path, action))

    def actions(self) -> dict[str, str]:
        return dict(self.entries)


@dataclass
class StudyReport:
    """Aggregate of the instance reports of one study: each (attribute, action) with its count."""
    study_instance_uid: str = ""
    instances: int = 0
    counts: Counter = field(default_factory=Counter)

    def add(self, report: InstanceReport) -> None:
        self.instances += 1
        self.counts.update(set(report.entries))

    def rows(self) -> list[dict]:
        """[{attribute, action, instances}] sorted by attribute."""
        return [{"attribute": path, "action": action, "instances": n}
                for (path, action), n in sorted(self.counts.items())]


def study_reports(reports: Iterable[InstanceReport]) -> dict[str, StudyReport]:
    out: dict[str, StudyReport] = {}
    for r in reports:
        out.setdefault(r.study_instance_uid, StudyReport(r.study_instance_uid)).add(r)
    return out


# --- the de-identifier ------------------------------------------------------------------------

def _name(tag: BaseTag) -> str:
    return keyword_for_tag(tag) or f"({tag.group:04X},{tag.element:04X})"


def _is_removed_group(tag: BaseTag) -> bool:
    group = tag.group
    if 0x5000 <= group <= 0x50FF:  # curve data (50xx,xxxx)
        return True
    if 0x6000 <= group <= 0x60FF and tag.element in (0x3000, 0x4000):  # overlay data / comments
        return True
    return False


def _dummy(vr: str, site_key: bytes, original) -> object:
    if vr in ("DA",):
        return _DUMMY_DATE
    if vr in ("TM",):
        return _DUMMY_TIME
    if vr == "DT":
        return _DUMMY_DATE + _DUMMY_TIME
    if vr in ("DS", "IS", "US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"):
        return 0
    if vr == "UI":
        return remap_uid(str(original), site_key) if original else "2.25.0"
    if vr in ("OB", "OW", "UN", "OF", "OD", "OL", "OV"):
        return b"\0\0"
    return _DUMMY_TEXT


class _Cleaner:
    def __init__(self, site_key: bytes, day_offset: int, dates: DateMode, report: InstanceReport):
        self.key = site_key
        self.days = day_offset
        self.dates = dates
        self.report = report

    def remap(self, value):
        if value is None or value == "":
            return value
        if isinstance(value, str):
            return remap_uid(value, self.key)
        return [remap_uid(v, self.key) for v in value if v]

    def shift(self, vr: str, value):
        """Shifted value, or None if any value cannot be shifted."""
        fn = shift_date if vr == "DA" else shift_datetime
        if isinstance(value, str):
            return fn(value, self.days) if value.strip() else value
        out = []
        for v in value:
            s = fn(str(v), self.days)
            if s is None:
                return None
            out.append(s)
        return out

    def clean(self, ds: Dataset, prefix: str = "") -> None:
        for tag in list(ds.keys()):
            tag = Tag(tag)
            if tag.is_private or _is_removed_group(tag):
                del ds[tag]
                self.report.add(prefix + _name(tag), "private removed" if tag.is_private else "removed")
                continue
            elem = ds[tag]
            path = prefix + _name(tag)
            rule = BASIC_PROFILE.get(int(tag))
            vr = elem.VR
            if rule is None:
                self._unlisted(ds, elem, vr, path)
                continue
            action = rule.effective
            if self.dates == "shift" and rule.keyword in LONGITUDINAL and vr in ("DA", "DT", "TM"):
                self._keep_date(ds, elem, vr, path)
                continue
            if action == "X":
                del ds[tag]
                self.report.add(path, "removed")
            elif action == "Z":
                if vr == "SQ":
                    elem.value = DicomSequence()
                else:
                    elem.value = None if vr not in ("OB", "OW", "UN") else b""
                self.report.add(path, "emptied")
            elif action == "D":
                if vr == "SQ":
                    self._recurse(elem, path)
                    self.report.add(path, "cleaned")
                else:
                    elem.value = _dummy(vr, self.key, elem.value)
                    self.report.add(path, "dummy")
            elif action == "U":
                if vr == "UI":
                    elem.value = self.remap(elem.value)
                    self.report.add(path, "remapped")
                else:  # a UID attribute with a wrong VR: do not keep it
                    del ds[tag]
                    self.report.add(path, "removed")
            elif action == "U*":
                if vr == "SQ":
                    self._recurse(elem, path)
                    self.report.add(path, "cleaned")
                else:
                    del ds[tag]
                    self.report.add(path, "removed")
            else:  # pragma: no cover - K and C do not occur in the Basic Profile column
                pass

    def _keep_date(self, ds: Dataset, elem, vr: str, path: str) -> None:
        if vr == "TM" or elem.value in (None, ""):
            return
        shifted = self.shift(vr, elem.value)
        if shifted is None:
            del ds[elem.tag]
            self.report.add(path, "removed")
        else:
            elem.value = shifted
            self.report.add(path, "shifted")

    def _unlisted(self, ds: Dataset, elem, vr: str, path: str) -> None:
        if vr == "SQ":
            self._recurse(elem, path)
        elif vr in ("DA", "DT"):
            if self.dates == "shift":
                self._keep_date(ds, elem, vr, path)
            elif elem.value not in (None, ""):
                del ds[elem.tag]
                self.report.add(path, "removed")

    def _recurse(self, elem, path: str) -> None:
        for item in elem.value or ():
            self.clean(item, path + ">")


def deidentify(ds: Dataset, *, pseudonym: str, site_key: bytes, day_offset: int = 0,
               dates: DateMode = "shift") -> InstanceReport:
    """De-identify ``ds`` in place (and its file meta) and return what was done.

    ``pseudonym`` becomes Patient's Name and Patient ID; ``site_key`` keys the UID mapping;
    ``day_offset`` is the patient's date shift in days (``dates="shift"``, the default) —
    keep it secret and per patient; ``dates="remove"`` removes dates instead.
    """
    if dates not in ("shift", "remove"):
        raise ValueError("dates must be 'shift' or 'remove'")
    if not site_key:
        raise ValueError("a site key is required")
    report = InstanceReport()
    cleaner = _Cleaner(site_key, day_offset, dates, report)
    cleaner.clean(ds)

    ds.PatientName = pseudonym
    ds.PatientID = pseudonym
    report.add("PatientName", "replaced")
    report.add("PatientID", "replaced")
    report.entries = [e for e in report.entries if e[0] not in ("PatientName", "PatientID") or e[1] == "replaced"]
    ds.PatientIdentityRemoved = "YES"
    ds.LongitudinalTemporalInformationModified = "MODIFIED" if dates == "shift" else "REMOVED"
    codes = ["113100"] + (["113107"] if dates == "shift" else [])
    _set_method(ds, codes)

    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        for tag in list(meta.keys()):
            if Tag(tag).is_private:
                del meta[tag]
        if "SOPInstanceUID" in ds:
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        if "SOPClassUID" in ds:
            meta.MediaStorageSOPClassUID = ds.SOPClassUID
        for tag in (0x00020016, 0x00020100, 0x00020102):  # source AE title, private info
            if tag in meta:
                del meta[tag]
    report.sop_instance_uid = str(ds.get("SOPInstanceUID", ""))
    report.study_instance_uid = str(ds.get("StudyInstanceUID", ""))
    return report


def method_codes(ds: Dataset) -> list[str]:
    """The CID 7050 code values in the dataset's De-identification Method Code Sequence."""
    return [str(item.CodeValue) for item in ds.get("DeidentificationMethodCodeSequence", [])]


def _set_method(ds: Dataset, codes: Sequence[str]) -> None:
    seq = DicomSequence()
    for code in codes:
        item = Dataset()
        item.CodeValue = code
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = DEID_CODES[code]
        seq.append(item)
    ds.DeidentificationMethodCodeSequence = seq
    ds.DeidentificationMethod = "CPMS PS3.15 Annex E: " + ", ".join(_SHORT.get(c, c) for c in codes)  # LO: 64


# --- burned-in annotations --------------------------------------------------------------------

_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"  # and .7.1 - .7.4
_ENCAPSULATED = "1.2.840.10008.5.1.4.1.1.104."  # PDF, CDA, STL, OBJ, MTL
_ULTRASOUND = ("1.2.840.10008.5.1.4.1.1.6.1", "1.2.840.10008.5.1.4.1.1.6.2", "1.2.840.10008.5.1.4.1.1.3.1")
REVIEW_MODALITIES = frozenset({"US", "SC", "OT", "XC", "DOC"})


def needs_pixel_review(ds: Dataset) -> bool:
    """True when the pixels may carry burned-in identifying text and someone must look first.

    Burned In Annotation YES; or, unless it is explicitly NO: modality US, SC, OT, XC or DOC,
    a Secondary Capture or ultrasound SOP class, or an encapsulated document (PDF ...).
    """
    burned = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    if burned == "YES":
        return True
    if burned == "NO":
        return False
    modality = str(ds.get("Modality", "") or "").strip().upper()
    sop_class = str(ds.get("SOPClassUID", "") or "")
    return (modality in REVIEW_MODALITIES
            or sop_class == _SECONDARY_CAPTURE or sop_class.startswith(_SECONDARY_CAPTURE + ".")
            or sop_class.startswith(_ENCAPSULATED)
            or sop_class in _ULTRASOUND)


def mask_regions(ds: Dataset, rects: Iterable[tuple[int, int, int, int]]) -> int:
    """Clean Pixel Data: blank every rectangle ``(x, y, width, height)`` in every frame.

    Compressed pixel data is decoded and written back uncompressed (Explicit VR Little Endian;
    YBR colour becomes RGB). The blank is black: 0 for MONOCHROME2 and colour, the largest value for
    MONOCHROME1, the smallest for signed data. Afterwards Burned In Annotation is NO and code
    113101 (Clean Pixel Data Option) is added to the method. Returns the number of pixels blanked
    per frame. Rectangles are clipped to the image; an empty list changes nothing.
    """
    import numpy as np
    from pydicom.pixels import get_decoder

    rects = [tuple(int(v) for v in r) for r in rects]
    if not rects:
        return 0
    decoder = get_decoder(ds.file_meta.TransferSyntaxUID)
    arr, meta = decoder.as_array(ds, as_rgb=True)
    arr = np.ascontiguousarray(arr)
    if not arr.flags.writeable:
        arr = arr.copy()
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1))
    rows, cols = int(ds.Rows), int(ds.Columns)
    view = arr.reshape((frames, rows, cols, samples))
    pi = str(meta.get("photometric_interpretation", ds.PhotometricInterpretation))
    bits = int(ds.BitsStored)
    if pi == "MONOCHROME1":
        fill = (1 << (bits - 1)) - 1 if arr.dtype.kind == "i" else (1 << bits) - 1
    elif arr.dtype.kind == "i":
        fill = -(1 << (bits - 1))
    else:
        fill = 0
    mask = np.zeros((rows, cols), dtype=bool)
    for x, y, w, h in rects:
        if w <= 0 or h <= 0:
            raise ValueError(f"empty rectangle {(x, y, w, h)}")
        mask[max(0, y):max(0, y + h), max(0, x):max(0, x + w)] = True
    view[:, mask, :] = fill
    ds.set_pixel_data(arr, pi, bits, generate_instance_uid=False)
    ds.BurnedInAnnotation = "NO"
    codes = method_codes(ds) or ["113100"]
    if "113101" not in codes:
        codes.append("113101")
    _set_method(ds, codes)
    return int(mask.sum())
